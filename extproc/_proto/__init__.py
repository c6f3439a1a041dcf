"""Generated protobuf/gRPC modules (from protos/, by setup.py's build_py). Import them via extproc.pb."""
