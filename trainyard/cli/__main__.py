"""python -m trainyard.cli"""
import sys

from trainyard.cli import main

sys.exit(main())
