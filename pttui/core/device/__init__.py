"""CPU RAM and GPUs, as pttui reports them."""
