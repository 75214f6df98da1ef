"""Sound from a General MIDI SoundFont found on the machine: offline renders, samples for the
studio's sampler, and FluidSynth playing live. Never torch; FluidSynth only where it plays."""
