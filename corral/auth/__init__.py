"""Request authentication: the Encord SDK's two signature schemes and bearer tokens."""
