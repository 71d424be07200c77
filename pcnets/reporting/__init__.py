"""Tables (CSV and Markdown), figures and the gathered report: they read run folders, never
models, so every table and figure can be rendered again from a finished run."""
