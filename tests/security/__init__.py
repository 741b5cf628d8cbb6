"""Security and hostile input: keys and scopes, safe defaults, limits, injection, fuzzing."""
