"""Dataset preparation: one module per dataset layout plus the shared video, face and audio steps."""
