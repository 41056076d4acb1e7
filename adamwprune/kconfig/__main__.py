from adamwprune.kconfig.cli import entry

entry()
