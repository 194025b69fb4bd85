"""engine.nn: modules, layers, losses and init (torch.nn)."""
from engine.nn import functional, init, utils  # noqa: F401
from engine.nn.activation import *  # noqa: F401,F403
from engine.nn.containers import *  # noqa: F401,F403
from engine.nn.flatten import *  # noqa: F401,F403
from engine.nn.linear import *  # noqa: F401,F403
from engine.nn.loss import *  # noqa: F401,F403
from engine.nn.module import Module  # noqa: F401
from engine.nn.parameter import Buffer, Parameter  # noqa: F401
from engine.nn.conv import *  # noqa: F401,F403
from engine.nn.dropout import *  # noqa: F401,F403
from engine.nn.normalization import *  # noqa: F401,F403
from engine.nn.pooling import *  # noqa: F401,F403
from engine.nn.sparse import *  # noqa: F401,F403
from engine.nn.rnn import *  # noqa: F401,F403
from engine.nn.transformer import *  # noqa: F401,F403
