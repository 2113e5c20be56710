"""Model families (GARCH, XGBoost, LSTM) behind one protocol, CV, training, ONNX export, registry."""
