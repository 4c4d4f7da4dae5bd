"""The declarative products file: parse it with line numbers, plan it, apply it atomically."""
