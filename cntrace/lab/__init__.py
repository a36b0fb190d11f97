"""The built-in lab: a Docker-like host built inside network namespaces, with faults to inject."""
