"""View-model: the service's read-only state turned into plain dataclasses
that the widgets render as they are.

No Textual here (and no engine logic in the widgets). One module per job,
imported from the module that defines each name:

- :mod:`.format`: text formatting (durations, ages, metrics, clipping);
- :mod:`.views`: the frozen view dataclasses the screens and widgets render;
- :mod:`.build`: pure builders that turn state rows into views;
- :mod:`.sources`: the loaders that read the daemon's SQLite state through
  :class:`~piu_engine.service.state.StateReader` (run in thread workers).

Time comes from an injected clock, so a frozen clock gives frozen screens.
"""
