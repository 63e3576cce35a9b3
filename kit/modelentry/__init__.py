"""Model entries for a Triton model repository, written from what a model (or a MONAI bundle) says about itself:
`make model-config` (kit.modelentry.entry, kit.modelentry.signature), `make import-bundle`
(kit.modelentry.bundle)."""
