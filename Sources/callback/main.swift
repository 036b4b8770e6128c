import Integration

Route.serve(CallbackHandler.init(configuration:))
