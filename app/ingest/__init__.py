"""Your own documents in: files and record tables read, long texts split into passages, languages detected."""
