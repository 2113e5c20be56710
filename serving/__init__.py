"""Online decision engine and its HTTP service (onnxruntime only; never imports torch)."""
