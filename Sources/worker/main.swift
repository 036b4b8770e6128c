import Integration

// The job kinds this worker runs; the sync handlers join this list.
Worker.serve { [] }
