"""engine.nn.functional: the stateless forms of the layers (torch.nn.functional)."""
from engine.nn.functional._activation import *
from engine.nn.functional._conv import *
from engine.nn.functional._linear import *
from engine.nn.functional._loss import *
from engine.nn.functional._misc import *
from engine.nn.functional._normalization import *
from engine.nn.functional._pooling import *
