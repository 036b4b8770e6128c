import Integration

Route.serve(DisconnectHandler.init(configuration:))
