"""What a run is asked to do: crash kinds, fault kinds (and acting them out on the running machine), the sample components' model."""
