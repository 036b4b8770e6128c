import Integration

Route.serve(HelloDatabaseHandler.init(configuration:))
