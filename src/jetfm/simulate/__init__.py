"""Simulation: Pythia 8 jets in the JetClass layout, and (`resim/`) re-simulation views of the same events.

Pipeline, one reusable function per step (re-simulation pushes its views through the same ones):
`processes.make_pythia` -> `particles.final_state_from_batch` / `truth_from_batch` (or `*_from_event` for one
`pythia.event`) -> `detector.detector_response` -> `jets.build_jets` -> `writer.write_jetclass_root` (or the
streaming `writer.JetClassWriter`);
`run.simulate_shard` chains them for one class x shard. Record layouts are documented in `particles` and
`detector`. Submodules are imported lazily by callers, so `jetfm simulate --help` stays fast.
"""
