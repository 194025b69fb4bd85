"""engine.nn.functional: the stateless forms of the layers (torch.nn.functional)."""
from engine.nn.functional._activation import *  # noqa: F401,F403
from engine.nn.functional._conv import *  # noqa: F401,F403
from engine.nn.functional._linear import *  # noqa: F401,F403
from engine.nn.functional._loss import *  # noqa: F401,F403
from engine.nn.functional._misc import *  # noqa: F401,F403
from engine.nn.functional._normalization import *  # noqa: F401,F403
from engine.nn.functional._pooling import *  # noqa: F401,F403
