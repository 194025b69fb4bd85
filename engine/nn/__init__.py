"""engine.nn: modules, layers, losses and init (torch.nn)."""
# ruff: noqa: I001  (order matters: engine.nn.parallel, imported last, uses the layers above)
from engine.nn import functional, init, utils  # noqa: F401
from engine.nn.activation import *
from engine.nn.containers import *
from engine.nn.conv import *
from engine.nn.dropout import *
from engine.nn.flatten import *
from engine.nn.linear import *
from engine.nn.loss import *
from engine.nn.module import Module  # noqa: F401
from engine.nn.normalization import *
from engine.nn.parameter import Buffer, Parameter  # noqa: F401
from engine.nn.pooling import *
from engine.nn.rnn import *
from engine.nn.sparse import *
from engine.nn.transformer import *
from engine.nn.upsampling import *
from engine.nn import parallel  # noqa: F401  (engine.nn.parallel.DistributedDataParallel)
