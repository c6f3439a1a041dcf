import os
import sys

HERE = os.path.dirname(__file__)
for extra in (HERE, os.path.join(HERE, "integration")):
    if extra not in sys.path:
        sys.path.insert(0, extra)
