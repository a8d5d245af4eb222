"""rumpy: one TOML file to a trained super-resolution model."""
