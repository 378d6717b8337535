"""What the tests and the benches share to run Fathom as its users do; left out of the wheel
(pyproject.toml)."""
