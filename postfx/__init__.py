"""Post-processing stages: interpolation (RIFE), upscaling (Real-ESRGAN), colour, assembly."""
