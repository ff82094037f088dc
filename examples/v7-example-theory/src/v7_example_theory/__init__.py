"""An example third-party V7 plugin: Wilder's Relative Strength Index as a `Theory`.

V7 loads `v7_example_theory.rsi` through the `rsi` entry point in the `v7` group; nothing
here needs to be imported by hand.
"""

__version__ = "0.1.0"
