"""engine.optim: optimizers with torch's names, defaults, update math and state_dict layout."""
from engine.optim import lr_scheduler  # noqa: F401
from engine.optim.adagrad import Adagrad  # noqa: F401
from engine.optim.adam import Adam, AdamW  # noqa: F401
from engine.optim.adamax import Adamax  # noqa: F401
from engine.optim.optimizer import Optimizer  # noqa: F401
from engine.optim.rmsprop import RMSprop  # noqa: F401
from engine.optim.sgd import SGD  # noqa: F401
