"""The ML: data, methods, training, metrics, the benchmark and the forget run.

Never imports the service or the UI. The request and catalog modules are
torch-free so the service can validate and type requests without PyTorch."""
