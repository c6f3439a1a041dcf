// A differential-test upstream: decodes request bodies with encoding/json into Ollama-like and
// OpenAI/Anthropic-compatibility structs (the way Ollama reads them through gin's ShouldBindJSON), logs what
// it decoded (one JSON line per request) and answers a reply scripted per x-request-id.
// Standard library only; built by the tests with `go build`.
package main

import (
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// ---- Ollama api types (ollama/api/types.go, the fields that reach the model) ----

type ImageData []byte

type ToolCallFunction struct {
	Index     int            `json:"index,omitempty"`
	Name      string         `json:"name"`
	Arguments map[string]any `json:"arguments"`
}

type ToolCall struct {
	Function ToolCallFunction `json:"function"`
}

type Message struct {
	Role      string      `json:"role"`
	Content   string      `json:"content"`
	Thinking  string      `json:"thinking,omitempty"`
	Images    []ImageData `json:"images,omitempty"`
	ToolCalls []ToolCall  `json:"tool_calls,omitempty"`
	ToolName  string      `json:"tool_name,omitempty"`
}

type ToolFunction struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Parameters  any    `json:"parameters"`
}

type Tool struct {
	Type     string       `json:"type"`
	Items    any          `json:"items,omitempty"`
	Function ToolFunction `json:"function"`
}

type ChatRequest struct {
	Model     string          `json:"model"`
	Messages  []Message       `json:"messages"`
	Stream    *bool           `json:"stream,omitempty"`
	Format    json.RawMessage `json:"format,omitempty"`
	KeepAlive any             `json:"keep_alive,omitempty"`
	Tools     []Tool          `json:"tools,omitempty"`
	Options   map[string]any  `json:"options"`
	Think     any             `json:"think,omitempty"`
}

type GenerateRequest struct {
	Model     string          `json:"model"`
	Prompt    string          `json:"prompt"`
	Suffix    string          `json:"suffix"`
	System    string          `json:"system"`
	Template  string          `json:"template"`
	Context   []int           `json:"context,omitempty"`
	Stream    *bool           `json:"stream,omitempty"`
	Raw       bool            `json:"raw,omitempty"`
	Format    json.RawMessage `json:"format,omitempty"`
	KeepAlive any             `json:"keep_alive,omitempty"`
	Images    []ImageData     `json:"images,omitempty"`
	Options   map[string]any  `json:"options"`
	Think     any             `json:"think,omitempty"`
}

// ---- OpenAI compatibility types (ollama/openai), Anthropic messages and Responses, loosely typed ----

type OAIToolCall struct {
	ID       string `json:"id"`
	Index    int    `json:"index"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type OAIMessage struct {
	Role       string        `json:"role"`
	Content    any           `json:"content"`
	Reasoning  string        `json:"reasoning,omitempty"`
	ToolCalls  []OAIToolCall `json:"tool_calls,omitempty"`
	Name       string        `json:"name,omitempty"`
	ToolCallID string        `json:"tool_call_id,omitempty"`
}

type ChatCompletionRequest struct {
	Model           string       `json:"model"`
	Messages        []OAIMessage `json:"messages"`
	Stream          bool         `json:"stream"`
	StreamOptions   any          `json:"stream_options"`
	MaxTokens       *int         `json:"max_tokens"`
	Seed            *int         `json:"seed"`
	Stop            any          `json:"stop"`
	Temperature     *float64     `json:"temperature"`
	TopP            *float64     `json:"top_p"`
	ResponseFormat  any          `json:"response_format"`
	Tools           []Tool       `json:"tools"`
	ToolChoice      any          `json:"tool_choice"`
	ReasoningEffort *string      `json:"reasoning_effort"`
	User            string       `json:"user"`
}

type AnthropicTool struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	InputSchema any    `json:"input_schema"`
}

type MessagesRequest struct {
	Model     string `json:"model"`
	MaxTokens int    `json:"max_tokens"`
	Messages  []struct {
		Role    string `json:"role"`
		Content any    `json:"content"`
	} `json:"messages"`
	System     any             `json:"system"`
	Tools      []AnthropicTool `json:"tools"`
	ToolChoice any             `json:"tool_choice"`
	Metadata   any             `json:"metadata"`
	Stream     bool            `json:"stream"`
	Thinking   any             `json:"thinking"`
}

type ResponsesRequest struct {
	Model        string `json:"model"`
	Input        any    `json:"input"`
	Instructions string `json:"instructions"`
	Tools        []any  `json:"tools"`
	ToolChoice   any    `json:"tool_choice"`
	Text         any    `json:"text"`
	Reasoning    any    `json:"reasoning"`
	Stream       bool   `json:"stream"`
}

// ---- routing: the most lenient reading of a path (case, repeated and trailing slashes ignored) ----

func route(path string) (string, func() any) {
	p := strings.ToLower(path)
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	p = strings.TrimSuffix(p, "/")
	switch p {
	case "/api/chat":
		return "ollama_chat", func() any { return &ChatRequest{} }
	case "/api/generate":
		return "ollama_generate", func() any { return &GenerateRequest{} }
	case "/v1/chat/completions":
		return "openai_chat", func() any { return &ChatCompletionRequest{} }
	case "/v1/messages":
		return "anthropic_messages", func() any { return &MessagesRequest{} }
	case "/v1/responses":
		return "openai_responses", func() any { return &ResponsesRequest{} }
	}
	return "generic", func() any { var v any; return &v }
}

// imageText returns decoded image bytes as text: the model server receives the bytes, not the base64.
func imageText(v any) []string {
	var out []string
	add := func(images []ImageData) {
		for _, img := range images {
			out = append(out, string(img))
		}
	}
	switch r := v.(type) {
	case *ChatRequest:
		for _, m := range r.Messages {
			add(m.Images)
		}
	case *GenerateRequest:
		add(r.Images)
	}
	return out
}

// ---- scripted replies ----

type Reply struct {
	Status       int               `json:"status"`
	Headers      map[string]string `json:"headers"`
	Chunks       []string          `json:"chunks"` // base64
	ChunkDelayMs int               `json:"chunk_delay_ms"`
	Gzip         bool              `json:"gzip"`
}

type server struct {
	mu      sync.Mutex
	replies map[string]Reply
	log     *os.File
}

func (s *server) control(w http.ResponseWriter, r *http.Request) {
	var req struct {
		RequestID string `json:"request_id"`
		Reply     Reply  `json:"reply"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	s.mu.Lock()
	s.replies[req.RequestID] = req.Reply
	s.mu.Unlock()
	w.WriteHeader(204)
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/__control/reply" {
		s.control(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	name, fresh := route(r.URL.Path)
	decoded := fresh()
	entry := map[string]any{"request_id": r.Header.Get("x-request-id"), "method": r.Method,
		"raw_path": r.RequestURI, "route": name, "query": r.URL.RawQuery, "body_bytes": len(body)}
	if len(body) > 0 {
		if err := json.Unmarshal(body, decoded); err != nil {
			entry["decode_error"] = err.Error()
		} else {
			entry["decoded"] = decoded
			entry["extra_text"] = imageText(decoded)
		}
	}
	s.record(entry)
	s.answer(w, entry["request_id"].(string))
}

func (s *server) record(entry map[string]any) {
	line, err := json.Marshal(entry)
	if err != nil {
		line, _ = json.Marshal(map[string]any{"request_id": entry["request_id"], "marshal_error": err.Error()})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log.Write(append(line, '\n'))
}

func (s *server) answer(w http.ResponseWriter, requestID string) {
	s.mu.Lock()
	reply, ok := s.replies[requestID]
	delete(s.replies, requestID)
	s.mu.Unlock()
	if !ok {
		reply = Reply{Status: 200, Headers: map[string]string{"content-type": "application/json"},
			Chunks: []string{base64.StdEncoding.EncodeToString([]byte(`{"ok":true}`))}}
	}
	for k, v := range reply.Headers {
		w.Header().Set(k, v)
	}
	var out io.Writer = w
	var gz *gzip.Writer
	if reply.Gzip {
		w.Header().Set("content-encoding", "gzip")
		gz = gzip.NewWriter(w)
		out = gz
	}
	w.WriteHeader(reply.Status)
	flusher, _ := w.(http.Flusher)
	for i, chunk := range reply.Chunks {
		if i > 0 && reply.ChunkDelayMs > 0 {
			time.Sleep(time.Duration(reply.ChunkDelayMs) * time.Millisecond)
		}
		data, _ := base64.StdEncoding.DecodeString(chunk)
		out.Write(data)
		if gz != nil {
			gz.Flush()
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
	if gz != nil {
		gz.Close()
	}
}

func main() {
	logPath := flag.String("log", "", "file the decoded requests are appended to")
	flag.Parse()
	logFile, err := os.OpenFile(*logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		panic(err)
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Printf("LISTENING %d\n", listener.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	srv := &server{replies: map[string]Reply{}, log: logFile}
	panic(http.Serve(listener, srv))
}
