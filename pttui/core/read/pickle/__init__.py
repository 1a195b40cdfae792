"""The restricted unpickler: inert stand-ins, tensor builders, the memo guard, the globals classifier."""
