"""The contextual injection encoder: an int8 ONNX MiniLM with a linear head, its verdict cache and budget."""
