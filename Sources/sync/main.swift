import Integration

Route.serve(SyncHandler.init(configuration:))
