# Nothing: the stand-in Slicer has no extension description or packaging step.
