"""The command line: parse arguments, call a Target, render its typed results.

The program starts in launch.py; the commands are in commands.py.
"""
