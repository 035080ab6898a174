"""The three commands users type: `fcos3d` (main.py), `fcos3d-compile` (compile.py), `fcos3d-validate`
(validate.py), with the demo's flow (demo.py) and their rich helpers (console.py). Nothing imports this room."""
