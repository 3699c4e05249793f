"""What the assistant sees: camera frames for vision-capable models."""
