"""Configuration: yacs defaults plus upstream-compatible loading of experiment YAMLs."""
from .default import get_default_config
from .loader import check_config, load_config, packaged_configs, resolve_config_path

__all__ = ["get_default_config", "load_config", "resolve_config_path", "packaged_configs", "check_config"]
