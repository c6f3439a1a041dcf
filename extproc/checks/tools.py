"""`check: tools` — excessive agency. Governs which tools a request may declare and force, and which calls
the model's answer may carry, with what arguments.

Request: every declared tool is matched against the `deny` / `allow` globs; a disallowed one is stripped from
the body (`on_disallowed: strip`) or the request is refused (`deny`). A `tool_choice` that forces a disallowed
tool is always refused (it cannot be honoured), as is a mode outside `tool_choice_modes`. Declared tools
matching `high_risk` are recorded (annotate) in the audit record.

Response (buffered or streamed, before any byte of the call is released): a call to a disallowed tool is
`tool_not_allowed`, to an `approval_required` tool `tool_approval_required` (so a client can route it to a
human), with arguments breaking the tool's schema `tool_arguments_invalid`. Where the shape keeps tools and
tool calls is the shape's business (`Shape.tool_name`, `tool_choice`, `remove_tools`, `response_tool_calls`,
`tool_fragments`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from extproc.checks import register
from extproc.checks._tool_schema import ArgSchema
from extproc.checks.base import Check
from extproc.checks.context import CheckContext
from extproc.model import ToolCall
from extproc.rules import CompiledCheck, Glob

ChoiceMode = Literal["none", "auto", "required", "tool"]
ALL_MODES: tuple[ChoiceMode, ...] = ("none", "auto", "required", "tool")
UNDECLARED = "<undeclared>"  # audit name of a called tool the request did not declare (model output)


class ToolsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allow: list[str] = Field(default_factory=list, description="tool name globs allowed (empty: any not denied)")
    deny: list[str] = Field(default_factory=list, description="tool name globs never allowed (wins over allow)")
    approval_required: list[str] = Field(
        default_factory=list, description="tools the model may be offered, but whose calls are refused with "
        "code tool_approval_required for a human to approve")
    high_risk: list[str] = Field(default_factory=list, description="tools recorded in the audit record")
    on_disallowed: Literal["strip", "deny"] = Field(
        "strip", description="a declared disallowed tool: strip it from the request, or refuse the request")
    tool_choice_modes: list[ChoiceMode] = Field(
        default_factory=lambda: list(ALL_MODES),
        description="tool_choice modes allowed (tool = forcing one named tool)")
    arguments: dict[str, ArgSchema] = Field(
        default_factory=dict, description="tool name glob -> JSON Schema subset its call arguments must meet "
        "(first matching glob wins)")
    check_calls: bool = Field(True, description="check the model's tool calls in responses")


@register
class Tools(Check):
    name = "tools"
    Params = ToolsParams
    needs = frozenset({"request", "response"})
    owasp = ("LLM06:2025", "LLM03:2026")
    inspects_tool_calls = True

    params: ToolsParams

    def __init__(self, params: ToolsParams | None = None) -> None:
        super().__init__(params)
        p = self.params
        self.allow = Glob(p.allow)  # an empty list matches any tool
        self.deny, self.approval, self.high_risk = _any_of(p.deny), _any_of(p.approval_required), _any_of(p.high_risk)
        self.schemas = [(Glob([pattern]), schema) for pattern, schema in p.arguments.items()]

    def allowed(self, name: str | None) -> bool:
        return bool(name) and not self.deny(name) and self.allow(name)

    # ---- request -------------------------------------------------------------------------------------
    async def on_request(self, rule: CompiledCheck, ctx: CheckContext) -> None:
        assert ctx.parsed is not None
        names = [ctx.shape.tool_name(tool) for tool in ctx.parsed.tools]
        ctx.fields["tools_declared"] = len(names)
        self._check_choice(rule, ctx)
        refused = {i for i, name in enumerate(names) if not self.allowed(name)}
        if refused:
            self._refuse_tools(rule, ctx, names, refused)
        risky = sorted({name for name in map(ctx.shape.tool_name, ctx.parsed.tools) if name and self.high_risk(name)})
        if risky:
            ctx.fields["tools_high_risk"] = risky
            ctx.record(rule, "tool_high_risk", action="annotate")

    def _check_choice(self, rule: CompiledCheck, ctx: CheckContext) -> None:
        choice = ctx.shape.tool_choice(ctx.parsed.doc) if ctx.parsed is not None else None
        if choice is None:
            return
        if choice.mode not in self.params.tool_choice_modes:
            ctx.violation(rule, "tool_choice_not_allowed", f"tool_choice {choice.mode!r} is not allowed by policy",
                          code="tool_choice_not_allowed")
        elif choice.mode == "tool" and not self.allowed(choice.name):
            ctx.violation(rule, "tool_not_allowed", f"tool_choice forces tool {choice.name!r}, which is not "
                          "allowed by policy", code="tool_not_allowed")

    def _refuse_tools(self, rule: CompiledCheck, ctx: CheckContext, names: list[str | None],
                      refused: set[int]) -> None:
        shown = ", ".join(sorted({repr(names[i] or "") for i in refused}))
        if self.params.on_disallowed == "deny":
            ctx.violation(rule, "tool_not_allowed", f"tool(s) {shown} not allowed by policy", code="tool_not_allowed")
            return
        if ctx.rewrite(rule, "tool_stripped"):
            assert ctx.parsed is not None
            ctx.shape.remove_tools(ctx.parsed.doc, refused)
            ctx.parsed.tools = [tool for i, tool in enumerate(ctx.parsed.tools) if i not in refused]
            ctx.changed = True
            ctx.fields["tools_stripped"] = sorted({names[i] or "" for i in refused})

    # ---- response ------------------------------------------------------------------------------------
    def on_response_doc(self, rule: CompiledCheck, ctx: CheckContext, doc: Any) -> None:
        for call in ctx.shape.response_tool_calls(doc):
            self.on_tool_call(rule, ctx, call)

    def on_tool_call(self, rule: CompiledCheck, ctx: CheckContext, call: ToolCall) -> None:
        if not self.params.check_calls:
            return
        declared = {ctx.shape.tool_name(tool) for tool in ctx.parsed.tools} if ctx.parsed is not None else set()
        # Name only tools the client itself declared: any other name is model output.
        shown = f"tool {call.name!r}" if call.name in declared else "a tool the request did not declare"
        ctx.fields.setdefault("tool_calls", []).append(call.name if call.name in declared else UNDECLARED)
        if not self.allowed(call.name):
            self._refuse_call(rule, ctx, "tool_not_allowed", f"the model called {shown}, which is not allowed "
                              "by policy")
        elif self.approval(call.name):
            self._refuse_call(rule, ctx, "tool_approval_required", f"the model called {shown}, which needs "
                              "human approval")
        else:
            problem = self._argument_problem(call)
            if problem:
                self._refuse_call(rule, ctx, "tool_arguments_invalid", f"the model's call to {shown} has "
                                  f"arguments the policy does not allow: {problem}")

    def _argument_problem(self, call: ToolCall) -> str | None:
        schema = next((schema for glob, schema in self.schemas if glob(call.name)), None)
        if schema is None:
            return None
        if isinstance(call.arguments, str):
            return "they are not valid JSON"
        return schema.problem(call.arguments)

    @staticmethod
    def _refuse_call(rule: CompiledCheck, ctx: CheckContext, code: str, message: str) -> None:
        ctx.violation(rule, code, message, code=code, direction="response")


def _any_of(patterns: list[str]) -> Glob | Any:
    """A glob matcher that, unlike `Glob`, matches nothing when the list is empty."""
    return Glob(patterns) if patterns else (lambda name: False)
