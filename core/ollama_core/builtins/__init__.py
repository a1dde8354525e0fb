"""Built-in plugins: ordinary hook implementations that core ships and registers first."""
