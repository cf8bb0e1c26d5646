"""Neural networks of the learned pipelines (torch only; imported lazily by the pipelines)."""

from .vae import VAEConfig, LabelVAE, load_vae, save_vae  # noqa: F401

__all__ = ["VAEConfig", "LabelVAE", "load_vae", "save_vae"]

try:  # DeepWHR networks; guarded so that one network module's failure cannot break another
    from .asv import ASVConfig, ASVNet  # noqa: F401,E402
    from .dsl import DSLConfig, DSLNet  # noqa: F401,E402

    __all__ += ["ASVConfig", "ASVNet", "DSLConfig", "DSLNet"]
except Exception:  # pragma: no cover
    pass
