"""`python -m fcos3d.cli ...` (e.g. under torchrun) runs the `fcos3d` command."""

from .main import main

main()
