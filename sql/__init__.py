"""SQL files of lpmon (installed as the package lpmon._sql): numbered
migrations in migrations/, reporting queries beside this file."""
