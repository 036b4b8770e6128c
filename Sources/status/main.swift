import Integration

Route.serve(StatusHandler.init(configuration:))
