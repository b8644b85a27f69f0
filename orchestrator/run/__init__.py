"""Running a study: ``vlmscale run``'s driver (lock, set-up, rounds), one Tune trial per cell
(``trials``), the Ray cluster (``cluster``), signals (``interrupts``), the fit after each round
(``after_round``), the learning-rate search (``calibration_search``), the live table
(``progress``), ``profile``, ``rescore`` and ``repair``.

May import every package below it: ``errors``, ``spec``, ``scaling``, ``protocols``, ``store``,
``plan``, ``study``, ``tracking``; ray and torch only inside functions.
"""
