"""Reading people's digits with a trained CCNet: any image made to look like an MNIST digit (preprocess),
predict and its labelled-folder report, the draw page (serve), export to ONNX and TorchScript, the real
handwriting sets and the field report over them. Built on the training core (`mnist`), which never imports it."""
