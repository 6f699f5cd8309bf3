"""The Flower ServerApp: strategies, checkpoints. Never sees logs or features."""
