import Integration

// The job kinds this worker runs (JobKinds); the sync handlers join that list.
Worker.serve { try JobKinds.all() }
