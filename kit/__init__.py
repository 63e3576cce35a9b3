"""The kit's own tooling: phantoms, demo-model training, embedded Triton, pipelines, benchmark."""
