"""The model toolkit the cross-encoders and the embedder share: ONNX Runtime sessions, the int8 rewrite
(activation smoothing, per-token scales) and whether the model hub can be reached."""
