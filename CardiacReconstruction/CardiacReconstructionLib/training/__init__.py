"""Training commands of the learned pipelines (``cardiac-recon train <name>``)."""

TRAINERS = {"lo": "CardiacReconstructionLib.training.lo",  # name -> module with add_arguments / main
            "dsl_asv": "CardiacReconstructionLib.training.dsl_asv",  # DeepWHR: dsl | asv | finetune
            "mask2surface": "CardiacReconstructionLib.training.mask2surface",  # mcsr | pairs | vqvae | ldm
            "deeprecon": "CardiacReconstructionLib.training.deeprecon"}  # gan | encoder | directseg | seg

__all__ = ["TRAINERS"]
