"""obstop: take OceanBase clusters down safely, and bring them back.

The one name obstop installs. `obstop.agent` and `obstop.controller` are the agent/ and controller/
folders of the repository; this package adds the CLI (cli/), the ops client (client.py, render.py), the
fakes (fakes/) and the demo (demo.py). Only the CLI and the demo wire the daemons.
"""

__version__ = "0.1.0"
