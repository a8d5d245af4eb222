"""Architectures are plain nn.Modules registered by name; importing this package registers them."""
from .registry import MODELS, build_model, check_model_params, model_params, model_tasks
from . import srcnn, vdsr, edsr, rcan, safmn, mlp, cnn_regressor  # noqa: F401  (registration)
from . import han, san  # noqa: F401  (registration)
from . import elan  # noqa: F401  (ELAN, and Q-ELAN conditioned on metadata)
from . import srmd, sftmd, qedsr, qrcan, qhan, qsan  # noqa: F401  (conditioned on metadata)
from . import rrdbnet, discriminators  # noqa: F401  (adversarial SR: ESRGAN, Real-ESRGAN)
from . import dan  # noqa: F401  (blind: kernel estimator and restorer)
from . import sparnet  # noqa: F401  (face SR: SPARNet, Q-SPARNet)
from . import contrastive  # noqa: F401  (contrastive encoders, ContrastiveBlindQRCAN)

__all__ = ["MODELS", "build_model", "check_model_params", "model_params", "model_tasks"]
